# Stand-in for apache/kafka where no image registry is reachable (scripts/compose-check
# --local-images): Debian's JRE and the same Kafka jars `storemon services` runs, started
# from the same KAFKA_* variables as the public image.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY libs/ /opt/kafka/libs/
COPY kafka-run kafka-api-versions.py /opt/kafka/bin/
RUN ln -s /opt/kafka/bin/kafka-api-versions.py /opt/kafka/bin/kafka-broker-api-versions.sh
CMD ["/opt/kafka/bin/kafka-run"]
