// Package simdriver is a simulated driver, for scale tests only: each server is an
// HTTP listener on loopback inside the test's own process, answering every request
// with 200 and logging it (a driver.Logger). It has no isolation, no image and no
// runtime behind it, so `kiln serve` never uses it; tests use it where the machine
// cannot run as many containers as the test needs (the dashboard with 1,000 servers),
// and say so.
package simdriver
