// Package statedir prepares a project's state directory (.kiln): private to its owner,
// whatever created it, because it holds the API tokens, the state database and the
// image store.
package statedir
