// Package simdriver is a simulated runtime inside the test's own process: each server
// is a loopback listener answering as examples/hello (drivertest's image) would, from
// the image and spec it is given; it passes the conformance suite in every go test.
//
// It has no isolation and runs no image's code, so `kiln serve` never uses it. Tests
// use it where no Docker engine is needed or the machine cannot run as many containers
// as the test needs (the dashboard with 1,000 servers), and say so.
package simdriver
