// Package cli is kiln's command line: one file per verb, each binding flags and printing
// results; the work itself is done by the packages it calls.
package cli
