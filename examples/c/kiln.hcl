# The c service: a web server in C, compiled in a builder image that has Debian's gcc
# and copied alone onto an empty base: the compiler never reaches the served image.
# `kiln up` bakes and deploys it.
#
# Three images: "gcc" is Debian's gcc and C library (packages, pinned by kiln.lock.hcl),
# "build" compiles src/hello.c in a sandbox over it (no network; cached by the hash of
# the source, the command and the builder), "c" is the static binary and nothing else.

variable "version" {
  default     = "dev"
  description = "The version the service reports."
}

variable "listen" {
  default     = "127.0.0.1:8080"
  description = "Where the service's front door listens."
}

image "gcc" {
  from = "scratch"

  packages {
    debian {
      suite    = "bookworm"
      packages = ["gcc", "libc6-dev"]
    }
  }
}

image "build" {
  from = image.gcc

  run "cc" {
    command = ["gcc", "-O2", "-static", "-Wall", "-Wextra", "-o", "/out/hello", "src/hello.c"]
    inputs  = ["src"]
    outputs = ["/out"]
  }
}

image "c" {
  from = "scratch"

  copy "/out/hello" {
    from = image.build
    to   = "/app/hello"
  }

  env = {
    VERSION = var.version
  }
  entrypoint = ["/app/hello"]
  expose     = [8080]
  user       = "65532:65532"
}

service "c" {
  image    = image.c
  replicas = 2
  port     = 8080
  listen   = var.listen

  health {
    http     = "/healthz"
    interval = "500ms"
  }

  update {
    strategy          = "rolling"
    max_surge         = 1
    min_healthy       = "1s"
    progress_deadline = "30s"
  }
}
