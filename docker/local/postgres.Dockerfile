# Stand-in for postgres:16 where no image registry is reachable (scripts/compose-check
# --local-images): Debian's PostgreSQL server, set up from the same POSTGRES_* variables.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY postgres-run /usr/local/bin/postgres-run
ENV PGDATA=/var/lib/postgresql/data
CMD ["/usr/local/bin/postgres-run"]
