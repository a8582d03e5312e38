// Package proc runs the servers a test needs from other programs (an ACME server, a
// Kubernetes control plane) as processes of the test: started with their output kept
// for the test's log, waited for until they answer, stopped with SIGTERM then
// SIGKILL, and killed with the test binary if it dies before its cleanup.
package proc
