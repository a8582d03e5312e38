// Package debian installs Debian packages into an image layer the way distroless does:
// it reads a repository's signed InRelease and its Packages index, resolves a list of
// packages and their dependencies, downloads every .deb into a cache keyed by its
// SHA-256, and extracts their files, with no maintainer script run, into one
// reproducible tar with the dpkg status of each package. A Lock pins every package to
// a version and a SHA-256 (kiln.lock.hcl), so that a build with a lock uses exactly
// those files and needs no network once they are cached.
//
// No maintainer script runs, as in distroless and apko: a script needs a shell, root
// and a chroot of the target architecture, and its output (timestamps, generated
// files) is not reproducible. What the scripts of the common runtime packages make
// that a server needs is made here (ca-certificates' bundle); what they make that it
// does not (alternatives, byte-compiled Python, users from base-passwd, diversions)
// is not. A package that cannot work without its scripts needs mmdebstrap, which runs
// them, in a base image built apart.
package debian
