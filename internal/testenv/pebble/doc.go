// Package pebble runs Let's Encrypt's test ACME server, Pebble, and its DNS server,
// pebble-challtestsrv, on loopback for a test: built once per version into the
// user's cache, started on free ports, validating challenges for real.
package pebble
