//go:build !linux

package pebble

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
