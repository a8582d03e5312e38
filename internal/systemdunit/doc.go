// Package systemdunit writes the systemd unit that runs kiln's daemon for a project
// directory, with every value escaped as systemd reads it, and drives systemctl to
// enable and disable it.
package systemdunit
