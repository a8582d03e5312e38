// The wrapper's views: one type per set of optional interfaces a driver may have.

package faultdriver

import "github.com/kiln-build/kiln/internal/driver"

// view returns the wrapper with exactly the optional interfaces of the wrapped driver,
// so that type assertions on it answer as they would on the driver itself; but
// driver.Stopper, which every view has (see core.Stop).
func (i *Injector) view() driver.Driver {
	c := core{i}
	var set int
	if _, ok := i.inner.(driver.Logger); ok {
		set |= 1 << 0
	}
	if _, ok := i.inner.(driver.Waiter); ok {
		set |= 1 << 1
	}
	if _, ok := i.inner.(driver.Watcher); ok {
		set |= 1 << 2
	}
	if _, ok := i.inner.(driver.Differ); ok {
		set |= 1 << 3
	}
	if _, ok := i.inner.(driver.ImageLoader); ok {
		set |= 1 << 4
	}
	switch set {
	case 0:
		return struct {
			core
		}{c}
	case 1:
		return struct {
			core
			logger
		}{c, logger{i}}
	case 2:
		return struct {
			core
			waiter
		}{c, waiter{i}}
	case 3:
		return struct {
			core
			logger
			waiter
		}{c, logger{i}, waiter{i}}
	case 4:
		return struct {
			core
			watcher
		}{c, watcher{i}}
	case 5:
		return struct {
			core
			logger
			watcher
		}{c, logger{i}, watcher{i}}
	case 6:
		return struct {
			core
			waiter
			watcher
		}{c, waiter{i}, watcher{i}}
	case 7:
		return struct {
			core
			logger
			waiter
			watcher
		}{c, logger{i}, waiter{i}, watcher{i}}
	case 8:
		return struct {
			core
			differ
		}{c, differ{i}}
	case 9:
		return struct {
			core
			logger
			differ
		}{c, logger{i}, differ{i}}
	case 10:
		return struct {
			core
			waiter
			differ
		}{c, waiter{i}, differ{i}}
	case 11:
		return struct {
			core
			logger
			waiter
			differ
		}{c, logger{i}, waiter{i}, differ{i}}
	case 12:
		return struct {
			core
			watcher
			differ
		}{c, watcher{i}, differ{i}}
	case 13:
		return struct {
			core
			logger
			watcher
			differ
		}{c, logger{i}, watcher{i}, differ{i}}
	case 14:
		return struct {
			core
			waiter
			watcher
			differ
		}{c, waiter{i}, watcher{i}, differ{i}}
	case 15:
		return struct {
			core
			logger
			waiter
			watcher
			differ
		}{c, logger{i}, waiter{i}, watcher{i}, differ{i}}
	case 16:
		return struct {
			core
			loader
		}{c, loader{i}}
	case 17:
		return struct {
			core
			logger
			loader
		}{c, logger{i}, loader{i}}
	case 18:
		return struct {
			core
			waiter
			loader
		}{c, waiter{i}, loader{i}}
	case 19:
		return struct {
			core
			logger
			waiter
			loader
		}{c, logger{i}, waiter{i}, loader{i}}
	case 20:
		return struct {
			core
			watcher
			loader
		}{c, watcher{i}, loader{i}}
	case 21:
		return struct {
			core
			logger
			watcher
			loader
		}{c, logger{i}, watcher{i}, loader{i}}
	case 22:
		return struct {
			core
			waiter
			watcher
			loader
		}{c, waiter{i}, watcher{i}, loader{i}}
	case 23:
		return struct {
			core
			logger
			waiter
			watcher
			loader
		}{c, logger{i}, waiter{i}, watcher{i}, loader{i}}
	case 24:
		return struct {
			core
			differ
			loader
		}{c, differ{i}, loader{i}}
	case 25:
		return struct {
			core
			logger
			differ
			loader
		}{c, logger{i}, differ{i}, loader{i}}
	case 26:
		return struct {
			core
			waiter
			differ
			loader
		}{c, waiter{i}, differ{i}, loader{i}}
	case 27:
		return struct {
			core
			logger
			waiter
			differ
			loader
		}{c, logger{i}, waiter{i}, differ{i}, loader{i}}
	case 28:
		return struct {
			core
			watcher
			differ
			loader
		}{c, watcher{i}, differ{i}, loader{i}}
	case 29:
		return struct {
			core
			logger
			watcher
			differ
			loader
		}{c, logger{i}, watcher{i}, differ{i}, loader{i}}
	case 30:
		return struct {
			core
			waiter
			watcher
			differ
			loader
		}{c, waiter{i}, watcher{i}, differ{i}, loader{i}}
	default:
		return struct {
			core
			logger
			waiter
			watcher
			differ
			loader
		}{c, logger{i}, waiter{i}, watcher{i}, differ{i}, loader{i}}
	}
}
