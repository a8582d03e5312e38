// Command healthcheck is a Docker HEALTHCHECK for images without a shell: it exits 0
// if GET URL answers 2xx within a second, 1 otherwise. kiln-bench adds it to the
// example image so that Docker Swarm can health-check it.
//
// Usage: healthcheck [URL] (default http://127.0.0.1:8080/healthz)
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	url := "http://127.0.0.1:8080/healthz"
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	c := &http.Client{Timeout: time.Second}
	res, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		fmt.Fprintln(os.Stderr, res.Status)
		os.Exit(1)
	}
}
