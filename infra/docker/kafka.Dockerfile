# Apache Kafka (KRaft, one broker+controller) on Java 17, from the jars pinned in
# infra/kafka/pom.xml. Build context: infra/kafka (after fetch-jars.sh). On the host network it
# listens on 127.0.0.1:$KAFKA_BROKER_PORT (broker) and :$KAFKA_CONTROLLER_PORT (controller).
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
COPY libs/ /opt/kafka/libs/
COPY run-kafka.sh log4j.properties /opt/kafka/
ENV KAFKA_BROKER_PORT=9092 KAFKA_CONTROLLER_PORT=9093
CMD ["sh", "-c", "exec /opt/kafka/run-kafka.sh /var/lib/kafka \"$KAFKA_BROKER_PORT\" \"$KAFKA_CONTROLLER_PORT\" /opt/kafka/libs"]
