# The python service: a web app on Python's standard library, copied onto a base image
# with python3, run as two servers behind a front door. `kiln up` bakes and deploys it.
#
# The base is the local Docker engine's python:3.12-slim (`docker pull python:3.12-slim`
# first). Without a registry, build a Debian base with scripts/debian-python-base and
# pass its path: `kiln up -var base=$(scripts/debian-python-base)`.

variable "base" {
  default     = "docker://python:3.12-slim"
  description = "The image with python3 to start from."
}

variable "version" {
  default     = "dev"
  description = "The version the service reports."
}

variable "listen" {
  default     = "127.0.0.1:8080"
  description = "Where the service's front door listens."
}

image "python" {
  from = var.base

  copy "app" {
    to = "/app"
  }

  env = {
    PATH                    = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
    PYTHONDONTWRITEBYTECODE = "1"
    GREETING_FILE           = "/app/greeting.txt"
    VERSION                 = var.version
  }
  # -u: unbuffered output, so `kiln logs` shows each line as it is printed.
  entrypoint = ["python3", "-u", "/app/app.py"]
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
