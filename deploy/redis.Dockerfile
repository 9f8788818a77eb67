# Redis for the cache's shared levels, from Debian's package (no image registry needed).
# Built by deploy/build-images.sh as inferscale/redis:7.0.15.
FROM inferscale/debian:bookworm-minbase

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server=5:7.0.15-* \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb

USER redis
CMD ["redis-server", "--save", "", "--appendonly", "no"]
