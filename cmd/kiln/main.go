// Command kiln bakes reproducible server images and deploys them by replacement.
package main

import (
	"context"
	"os"

	"github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/sandbox"
)

func main() {
	sandbox.Init() // a go build's sandbox is this binary, re-executed
	ctx, stop := cli.Signals(context.Background(), os.Stderr)
	code := cli.Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
