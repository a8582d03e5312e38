// Command pause holds a pod's namespaces on the real node of kiln's Kubernetes tests
// (the sandbox image of its containerd): it waits for SIGTERM or SIGINT and exits.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
