package pebble

import "syscall"

// sysProcAttr has the servers killed if the test binary dies before its cleanup.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
