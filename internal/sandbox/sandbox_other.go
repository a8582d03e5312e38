//go:build !linux

package sandbox

import (
	"context"
	"fmt"
	"runtime"
)

func run(context.Context, *Command) error {
	return fmt.Errorf("%w: namespaces are Linux's, this is %s", ErrUnavailable, runtime.GOOS)
}

func child() {}

// Own does nothing where there is no sandbox.
func Own(string) error { return nil }

// OwnTree does nothing where there is no sandbox.
func OwnTree(string) error { return nil }
