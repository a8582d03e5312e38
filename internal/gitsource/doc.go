// Package gitsource is a pipeline's git source: a bare mirror of one branch, the commit
// it resolves, the checkout of a commit's tree, and the watch of a local repository's
// refs. It is the one package that imports go-git.
package gitsource
