# The python service: a web app on Python's standard library, on Debian's python3, run
# as two servers behind a front door. `kiln up` bakes and deploys it.
#
# The image holds Debian's python3 and what it depends on (about 40 packages), installed
# from deb.debian.org without running their scripts, and the app: nothing else. The
# first bake pins every package to a version and a SHA-256 in kiln.lock.hcl; later
# bakes use exactly those files, from the cache in .kiln/ when they have them.
# `kiln lock -update` moves the packages forward.

variable "version" {
  default     = "dev"
  description = "The version the service reports."
}

variable "listen" {
  default     = "127.0.0.1:8080"
  description = "Where the service's front door listens."
}

image "python" {
  from = "scratch"

  packages {
    debian {
      suite    = "bookworm"
      packages = ["python3"]
    }
  }

  copy "app" {
    to = "/app"
  }

  env = {
    PATH                    = "/usr/bin:/bin"
    PYTHONDONTWRITEBYTECODE = "1"
    GREETING_FILE           = "/app/greeting.txt"
    VERSION                 = var.version
  }
  # -u: unbuffered output, so `kiln logs` shows each line as it is printed.
  entrypoint = ["/usr/bin/python3", "-u", "/app/app.py"]
  workdir    = "/app"
  expose     = [8080]
  user       = "65532:65532"
}

service "python" {
  image    = image.python
  replicas = 2
  port     = 8080
  listen   = var.listen
  writable = ["/tmp"]

  # Python ignores SIGTERM as PID 1: a minimal init as PID 1 forwards it, so a replaced
  # server stops at once instead of being killed after stop_timeout.
  init = true

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
