"""Peers: membership, group decisions, federated averaging of decision heads.

Everything here is pure (clocks, randomness and keys are parameters) so that the math and
the protocols are tested exactly; the running agent wires it to MQTT.

- :mod:`agent.peers.wire`: strict JSON in and out (no NaN, no Infinity);
- :mod:`agent.peers.aggregate`: results (SPEC 6) -> one group decision (mean or vote);
- :mod:`agent.peers.membership`: who is online, in which groups, and who leads;
- :mod:`agent.peers.group`: one group decision per window, published by the leader only;
- :mod:`agent.peers.fedavg`: FedAvg, local training, differential privacy, pairwise masks;
- :mod:`agent.peers.rounds`: the federated round protocol: topics and messages;
- :mod:`agent.peers.coordinator`: a federation's coordinator (rounds, averaging, retries);
- :mod:`agent.peers.member`: a federation's member (local training, plain or masked updates);
- :mod:`agent.peers.robust`: coordinate-wise median and trimmed mean (``peers.robust``);
- :mod:`agent.peers.identity`: each agent's Ed25519 key, signatures, the site roster;
- :mod:`agent.peers.trust`: which peer messages count (roster or open mode), refusals counted.
"""
