// Package sandbox runs a command as an unprivileged user in new mount, network, pid, IPC
// and UTS namespaces that see only the directories it is given, the way bubblewrap does:
// the calling binary re-executes itself (Init), builds a fresh root from read-only and
// writable bind mounts (on an empty tmpfs, or over an image's root tree, read-only),
// drops every privilege and execs the command.
package sandbox
