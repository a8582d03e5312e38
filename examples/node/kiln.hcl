# The node service: a web app on Node's standard library, on Debian's nodejs, run as two
# servers behind a front door. `kiln up` bakes and deploys it.
#
# The image holds Debian's nodejs and what it depends on, installed from deb.debian.org
# without running their scripts, and the app: nothing else. The first bake pins every
# package to a version and a SHA-256 in kiln.lock.hcl; later bakes use exactly those
# files. `kiln lock -update` moves the packages forward.

variable "version" {
  default     = "dev"
  description = "The version the service reports."
}

variable "listen" {
  default     = "127.0.0.1:8080"
  description = "Where the service's front door listens."
}

image "node" {
  from = "scratch"

  packages {
    debian {
      suite    = "bookworm"
      packages = ["nodejs"]
    }
  }

  copy "app" {
    to = "/app"
  }

  env = {
    PATH          = "/usr/bin:/bin"
    NODE_ENV      = "production"
    GREETING_FILE = "/app/greeting.txt"
    VERSION       = var.version
  }
  entrypoint = ["/usr/bin/node", "/app/server.js"]
  workdir    = "/app"
  expose     = [8080]
  user       = "65532:65532"
}

service "node" {
  image    = image.node
  replicas = 2
  port     = 8080
  listen   = var.listen
  writable = ["/tmp"]

  # server.js handles SIGTERM itself, so it stops at once as PID 1: no init needed
  # (see examples/python for a program that does not).

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
