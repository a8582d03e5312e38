package proc

import "syscall"

// sysProcAttr has the process killed if the test binary dies before its cleanup.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
