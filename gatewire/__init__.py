"""The contract between gate agents and the gateway: item identity, messages, topics, authentication.

Depends on nothing else of provgate.
"""
