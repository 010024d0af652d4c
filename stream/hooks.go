package stream

// OnDemand sets the demand callback (RegistryConfig.Demand) of a registry
// already built, for wiring in which the callback's owner needs the
// registry first: the collectors' scheduler takes the registry as its
// Sink, and the registry tells the scheduler which on-demand topics have
// subscribers. f replaces RegistryConfig.Demand, with the same contract.
//
// Call it before Run and before the first session opens: it is not safe
// to call while the registry is in use.
func (r *Registry) OnDemand(f func(topic string, subscribed bool)) {
	r.cfg.Demand = f
}
