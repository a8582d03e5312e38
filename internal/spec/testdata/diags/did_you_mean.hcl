variable "version" {
  default = "dev"
}

secret "db_password" {
  env = "DB_PASSWORD"
}

image "base" {
  from = "scratch"
}

image "pyapp" {
  from   = image.bsae
  colour = "blue"
  labels = { version = var.versoin }
}

image "db" {
  from = image.x
}

service "pyapp" {
  image   = image.pyap
  port    = 8080
  listen  = ":8080"
  replica = 2
  env     = { PASSWORD = secret.db_pasword, OTHER = secret.token }

  helth {
    http = "/healthz"
  }
}

pipeline "deploy" {
  repo     = "https://example.com/app.git"
  services = ["pyap"]
  promote  = ["web"]
}
