variable "version" {
  default = "dev"
}

variable "replicas" {
  type    = number
  default = 2
}

variable "region" {
  default = "home"
}

image "base" {
  from     = "scratch"
  platform = "linux/arm64"

  file "/etc/motd" {
    content = "built by kiln ${var.version}\n"
    mode    = 0600
    owner   = "1:1"
  }
}

image "web" {
  from = image.base

  go {
    package = "./cmd/web"
    ldflags = ["-X main.version=${var.version}"]
    tags    = ["netgo"]
  }

  copy "static" {
    to      = "/srv/static"
    exclude = ["*.tmp"]
  }

  copy "greeting.txt" {
    to   = "/etc/web/"
    mode = "0640"
  }

  file "/etc/web/region" {
    content = upper(var.region)
  }

  env        = { REGION = var.region, GREETING = trimspace(file("greeting.txt")) }
  entrypoint = ["/app/web", "--serve"]
  cmd        = ["--port", "8080"]
  workdir    = "/srv"
  user       = "65532:65532"
  labels     = { team = "platform" }
  expose     = [8080, "53/udp"]
}

service "web" {
  image    = image.web
  replicas = var.replicas
  port     = 8080
  listen   = ":8080"
  args     = ["--port", "8080"]
  env      = { MODE = "prod" }
  writable = ["/tmp", "/var/cache/web"]

  resources {
    cpu    = 0.5
    memory = "128MiB"
    pids   = 64
  }

  health {
    http              = "/healthz"
    interval          = "500ms"
    start_period      = "2s"
    healthy_threshold = 2
  }

  update {
    strategy          = "blue-green"
    progress_deadline = "30s"
    auto_rollback     = false
  }
}

service "pinned" {
  image  = "web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  port   = 9000
  listen = "127.0.0.1:9000"
}
