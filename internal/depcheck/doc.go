// Package depcheck holds the test that enforces which kiln packages may import which.
package depcheck
