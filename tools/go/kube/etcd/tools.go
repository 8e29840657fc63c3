//go:build tools

// Package tools records etcd's main package as a dependency so `go mod tidy` keeps it.
package tools

import _ "go.etcd.io/etcd/server/v3"
