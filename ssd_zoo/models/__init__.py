"""SSD networks: the SSD model, its backbones and heads, and the registered variants."""
