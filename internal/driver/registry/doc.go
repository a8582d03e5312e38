// Package registry is the one list of kiln's drivers: it opens one by name.
package registry
