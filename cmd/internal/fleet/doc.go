// Package fleet runs opsdash over NATS: many hosts (agents) publish their
// topics, any number of replicas serve them. It is the only package of
// opsdash that imports nats.go and nats-server; collectors and stream stay
// free of NATS. It lives under cmd/internal so that both commands that
// need it, cmd/opsdash (hub, replica, agent) and cmd/opsdash-load (the fleet
// scenario's simulated agents and its NATS process), can import it and
// nothing outside cmd can.
//
// # Subjects and streams (docs/fleet.md has the numbers)
//
//   - opsdash.m.<topic>: an agent's values; <topic> starts with its host id.
//     Body: the value's JSON; headers Opsdash-Seq (the producer's seq) and
//     Opsdash-Ts (sample time, Unix ms).
//   - opsdash.p.<topic>: values of the publish API, from any replica, with
//     one seq (compare-and-set on the subject's last stream sequence).
//   - Stream OPSDASH holds both: file storage, 300 values per subject, 1 GiB,
//     no age limit (a topic's last seq must survive long outages).
//   - KV opsdash_hosts: one descriptor per host (its topics, their
//     intervals, its collectors' errors, its boot id).
//   - KV opsdash_sessions: browser sign-ins, shared by every replica.
//   - opsdash.demand.<topic> (core NATS): a replica's lease on an on-demand
//     topic (proc.top): renewed every 5 s, held for 15 s.
//   - opsdash.agent.<host>.ping (core NATS): answered by the agent of host;
//     a second agent with the same id finds the first and refuses to start.
//
// # Files
//
//   - subjects.go: the names above and the stream configurations.
//   - creds.go: the hub's secret, credentials derived from it, and each
//     role's NATS permissions.
//   - server.go: the hub's embedded nats-server with JetStream.
//   - conn.go: connecting with the reconnect behaviour every role wants.
//   - agent.go, summary.go: an agent (collectors.Sink over NATS).
//   - replica.go, liveness.go, demand.go, history.go: a replica feeding a
//     stream.Registry from JetStream.
//   - sessions.go: the browser session store on KV.
package fleet
