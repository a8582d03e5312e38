// Package faultdriver is a fault injector for tests: a driver.Driver wrapper that fails,
// hangs, delays or drops the calls and events of the driver it wraps, on purpose.
package faultdriver
