package stream

// NoLimit turns a limit off in a configuration struct.
//
// The zero rule, one for every configuration struct of opsdash
// (RegistryConfig, SessionConfig, httpapi.Config, collectors.Config and
// SchedulerConfig, the Config structs of cmd/opsdash's packages): a field
// left at its zero value means the documented default, the Default*
// constant its comment names, so a zero struct is a working default
// configuration and a field added later needs no caller to change. Off is
// spelled explicitly: NoLimit (any negative value) turns off the limits
// whose comments say they can be turned off; elsewhere a negative value
// counts as zero.
//
// The flags of `opsdash serve` keep their own documented spellings ("0
// turns a limit off", --send-buffer 0 keeps the system's buffer);
// cmd/opsdash translates them into these structs.
const NoLimit = -1
