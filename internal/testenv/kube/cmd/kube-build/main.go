// Command kube-build builds the Kubernetes control plane of kiln's tests into the
// user's cache (see internal/testenv/kube), unless it is there, and prints where.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/kiln-build/kiln/internal/testenv/kube"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if dir, err := kube.Binaries(); err == nil {
		fmt.Println(dir)
		return
	}
	fmt.Fprintf(os.Stderr, "kube-build: building Kubernetes %s and kwok %s for the tests (6–8 minutes on two cores; kept for later runs)\n", kube.Version, kube.KwokVersion)
	start := time.Now()
	dir, err := kube.Build(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube-build:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "kube-build: built in %s\n", time.Since(start).Round(time.Second))
	fmt.Println(dir)
}
