// Package harness runs kiln's benchmark scenarios against its peers on this machine
// and records their results as JSON, from which it renders Markdown.
package harness
