//go:build tools

// Package tools records the CLI's main package as a dependency so `go mod tidy` keeps it.
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
