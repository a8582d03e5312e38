image "web" {
  from = "scratch"
  user = "1:1"
}
}

service "web" {
  image = image.web
  port  = 8080
}
