image "web" {
  from = "scratch"
  cmd  = ["--port", "8080"
  user = "1:1"
}

service "web" {
  image = image.web
  port  = 8080
}
