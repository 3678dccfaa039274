module github.com/sockmux/sockmux

go 1.26.8

require github.com/stretchr/testify v1.12.1

require (
	github.com/creack/pty v1.1.24
	go.bug.st/serial v1.8.0
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.50.0
)
