// Package app builds viberq's parts from a config.Config: the one Redis client of a
// process, the record store, the enqueuer settings, the provider client, the poll
// policy, the alerter, the outbox consumer and the worker itself.
//
// It is the one place where settings are mapped onto the packages' own option
// structs (worker.Config, scheduler.Policy, tasks.StoreOptions, ...). `viberq worker`,
// `viberq demo` and `viberq bench` all build their workers with NewWorker, so the
// three run the same wiring.
package app
