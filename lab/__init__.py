"""dnslab: the lab model, rendering, image, providers and deploy."""
