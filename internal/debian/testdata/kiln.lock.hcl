# This file is maintained by kiln: "kiln lock" writes it, and so does the first bake.
# It pins every OS package of the images to a version and the SHA-256 of its file;
# "kiln lock -update" moves it forward. Commit it with the spec.

debian "api" {
  arch         = "arm64"
  packages     = ["tzdata"]
  repositories = ["http://deb.debian.org/debian bookworm main"]

  package "tzdata" {
    version = "2025b-0+deb12u1"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/t/tzdata/tzdata_2025b-0+deb12u1_all.deb"
    size    = 255000
    sha256  = "efefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef"
  }
}

debian "web" {
  arch         = "amd64"
  packages     = ["ca-certificates", "python3"]
  repositories = ["http://deb.debian.org/debian bookworm main", "http://deb.debian.org/debian-security bookworm-security main"]

  package "ca-certificates" {
    version = "20230311"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/c/ca-certificates/ca-certificates_20230311_all.deb"
    size    = 153476
    sha256  = "abababababababababababababababababababababababababababababababab"
  }

  package "libc6" {
    version = "2.36-9+deb12u10"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb"
    size    = 2757936
    sha256  = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
  }
}
