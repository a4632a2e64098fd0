// An independent SMSC for end-to-end tests: the npm package `smpp` (Node.js) as the SMPP
// server mamori binds to. It accepts one system_id/password, answers submit_sm with its own
// message ids, logs every accepted submit_sm as one JSON line (as the node library decoded it),
// and sends a delivery receipt (deliver_sm, esm_class 0x04) when registered_delivery asks.
// Usage: node smsc.js HOST PORT SYSTEM_ID PASSWORD LOGFILE [PIDFILE]
'use strict';
const fs = require('fs');
const smpp = require('smpp');
const [host, port, systemId, password, logFile, pidFile] = process.argv.slice(2);
let nextId = 1;

function str(v) {
  if (v === undefined || v === null) return '';
  if (Buffer.isBuffer(v)) return v.toString('hex');
  return String(v);
}

function pad(n) { return String(n).padStart(2, '0'); }
function smppDate(d) {
  return pad(d.getUTCFullYear() % 100) + pad(d.getUTCMonth() + 1) + pad(d.getUTCDate()) +
    pad(d.getUTCHours()) + pad(d.getUTCMinutes());
}

const server = smpp.createServer({ debug: false }, (session) => {
  let bound = false;
  const onBind = (pdu) => {
    if (pdu.system_id !== systemId || pdu.password !== password) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      return;
    }
    bound = true;
    session.send(pdu.response({ system_id: 'nodesmsc' }));
  };
  session.on('bind_transceiver', onBind);
  session.on('bind_transmitter', onBind);
  session.on('bind_receiver', onBind);
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
  session.on('deliver_sm_resp', () => {});
  session.on('error', () => {});
  session.on('submit_sm', (pdu) => {
    if (!bound) { session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS })); return; }
    const id = 'n' + (nextId++);
    const sm = pdu.short_message || {};
    const rec = {
      message_id: id, source_addr: pdu.source_addr, source_addr_ton: pdu.source_addr_ton,
      destination_addr: pdu.destination_addr, data_coding: pdu.data_coding,
      esm_class: pdu.esm_class, registered_delivery: pdu.registered_delivery,
      message: str(sm.message), udh: (sm.udh || []).map(str),
      sar_msg_ref_num: pdu.sar_msg_ref_num, sar_segment_seqnum: pdu.sar_segment_seqnum,
    };
    fs.appendFileSync(logFile, JSON.stringify(rec) + '\n');
    session.send(pdu.response({ message_id: id }));
    if (pdu.registered_delivery & 0x01) {
      setTimeout(() => {
        const now = smppDate(new Date());
        session.deliver_sm({
          source_addr: pdu.destination_addr, destination_addr: pdu.source_addr,
          esm_class: 0x04,
          short_message: `id:${id} sub:001 dlvrd:001 submit date:${now} done date:${now} stat:DELIVRD err:000 text:`,
          receipted_message_id: id, message_state: 2,
        });
      }, 200);
    }
  });
});
server.listen(Number(port), host, () => {
  fs.appendFileSync(logFile, '');
  if (pidFile) fs.writeFileSync(pidFile, String(process.pid));
  console.log(`smsc listening on ${host}:${port}`);
});
