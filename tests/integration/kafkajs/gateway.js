// An IoT gateway written with kafkajs: publishes readings in floorwatch's documented JSON, keyed by
// device id (kafkajs's default partitioner is Java's murmur2), then follows anomaly-alerts until it
// sees an alert for the failing device. Prints that alert as one JSON line.
const { Kafka, logLevel } = require("kafkajs");

const [broker, prefix] = [process.argv[2], process.argv[3]];
const kafka = new Kafka({ clientId: "kafkajs-gateway", brokers: [broker], logLevel: logLevel.NOTHING });

let seed = 42;
function gauss() {
  // Deterministic Box-Muller on a small LCG: the same readings every run.
  const next = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) + 1) / 2147483649;
  return Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
}

async function main() {
  const producer = kafka.producer();
  await producer.connect();
  const start = Date.now() - 600_000;
  const failing = `${prefix}-0`;
  for (let i = 0; i < 300; i++) {
    const messages = [0, 1].map((d) => {
      const device = `${prefix}-${d}`;
      const surge = device === failing && i >= 150 && i < 250 ? 0.009 : 0;
      const values = {
        temperature: 0.06 + 0.0015 * gauss(),
        vibration: 0.075 + 0.0015 * gauss(),
        motor_rpm: 0.045 + 0.0008 * gauss(),
        motor_amps: 0.084 + 0.0015 * gauss() + surge,
      };
      const ts = new Date(start + i * 1000).toISOString();
      return { key: device, value: JSON.stringify({ device_id: device, ts, values }) };
    });
    await producer.send({ topic: "sensor-readings", messages });
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `kafkajs-${Date.now()}`, sessionTimeout: 6000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic: "anomaly-alerts", fromBeginning: true });
  const timer = setTimeout(async () => { console.error("no alert within 90s"); process.exit(2); }, 90_000);
  await consumer.run({
    eachMessage: async ({ message }) => {
      const alert = JSON.parse(message.value.toString());
      if (alert.device_id === failing) {
        // Exit from here: awaiting consumer.disconnect() inside eachMessage deadlocks kafkajs.
        process.stdout.write(JSON.stringify(alert) + "\n", () => process.exit(0));
        clearTimeout(timer);
      }
    },
  });
}

main().catch((err) => { console.error(err.message); process.exit(1); });
