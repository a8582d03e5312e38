// Package secret keeps secret values out of everything kiln writes: it resolves a
// secret from its source (a file, an environment variable, a command), seals values
// for the state database with a key kept apart from it, and names values by a keyed
// digest, so that a changed secret is seen without the value being stored or shown.
package secret
