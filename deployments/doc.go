// Package deployments holds viberq's deployment files: the Dockerfile, the docker
// compose stack, the Kubernetes kustomize base and example overlay, the Grafana
// dashboard, and the helper scripts the Taskfile runs.
//
// It has no code of its own; its tests check the files against the code: every
// manifest decodes strictly into the Kubernetes API types, every VIBERQ_ variable is
// one that package config reads and the settings load, every subcommand and flag
// exists in the viberq binary, ports, probes, selectors and grace periods agree, and
// the dashboard only queries metrics that exist.
package deployments
