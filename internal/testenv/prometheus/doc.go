// Package prometheus runs a real Prometheus (Debian's, installed by
// scripts/ensure-prometheus) for a test: its own configuration and storage in the
// test's temporary directory, listening on loopback, scraping the targets the test
// names every second.
package prometheus
