// Package debian installs Debian packages into an image layer the way distroless does:
// it reads a repository's signed InRelease and its Packages index, resolves a list of
// packages and their dependencies, downloads every .deb into a cache keyed by its
// SHA-256, and extracts their files, with no maintainer script run, into one
// reproducible tar with the dpkg status of each package. A Lock pins every package to
// a version and a SHA-256 (kiln.lock.hcl), so that a build with a lock uses exactly
// those files and needs no network once they are cached.
package debian
