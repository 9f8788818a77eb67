# Prometheus from Debian's package (no image registry needed). Built by deploy/build-images.sh as
# inferscale/prometheus:2.42.0.
FROM inferscale/debian:bookworm-minbase

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus=2.42.0+ds-* \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && mkdir -p /var/lib/prometheus/data && chown prometheus:prometheus /var/lib/prometheus/data

USER prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/var/lib/prometheus/data"]
