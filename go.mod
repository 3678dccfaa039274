module github.com/sockmux/sockmux

go 1.26.8
