image "web" {
  from = "scratch"
}

service "web" {
  image    = image.nope
  replicas = -1
  port     = 70000
  listen   = "localhost"

  health {
    interval = "soon"
  }

  update {
    strategy        = "canary-ish"
    max_surge       = 0
    max_unavailable = 0
  }

  resources {
    memory = "lots"
  }
}

service "api" {
  image  = "web:latest"
  port   = 8080
  listen = "127.0.0.1:9000"
}

service "admin" {
  image  = image.web
  port   = 8080
  listen = "127.0.0.1:9000"

  health {
    http = "healthz"
    tcp  = true
  }
}
