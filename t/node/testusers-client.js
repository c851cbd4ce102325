#!/usr/bin/env node
// Drives the official Twilio Node.js helper library (twilio 6.3.1, see
// package.json), unchanged, against the studio_testusers gateway, the way a
// user of the library would: dummy credentials, client.studio.v2.flows(...)
// .testUsers().update()/.fetch().  Used by t/twilio_node.t.
//
//   node testusers-client.js [GATEWAY_URL] SCENARIO
//
// GATEWAY_URL (e.g. http://127.0.0.1:8080) may instead come from the
// environment as STUDIO_GATEWAY_URL.  SCENARIO is one of:
//
//   update      set four identities (E.164, client:, whatsapp:, a space)
//   fetch       read the list back
//   empty       update with an empty list (sent as an empty POST body)
//   too-long    update with a 301-byte identity in second position
//   bad-flow    fetch with the docs' placeholder SID FWXXXX... (not hex)
//
// Output: one line of JSON on stdout.  A success prints the resource
// ({sid, testUsers, url}); a Twilio RestException prints its {status, code,
// message, moreInfo} and still exits 0, so the caller can assert on it; any
// other error (connection refused, a library Error) exits 1.

'use strict';

const twilio = require('twilio');

const FLOW = 'FW0123456789abcdef0123456789abcdef';

// dummy credentials: well-formed, because the library insists on an AC...
// Account SID and a token, but worthless: the gateway drops the
// Authorization they produce and injects the service's own.
const DUMMY_SID = 'AC' + 'deadbeef'.repeat(4);
const DUMMY_TOKEN = 'dummy-token-not-a-secret';

const SCENARIOS = {
    update: (flow) => flow(FLOW).update({
        testUsers: ['+15555550100', 'client:alice', 'whatsapp:+15555550101',
                    'client:bob smith'],
    }),
    fetch: (flow) => flow(FLOW).fetch(),
    empty: (flow) => flow(FLOW).update({ testUsers: [] }),
    'too-long': (flow) => flow(FLOW).update({
        testUsers: ['+15555550100', 'x'.repeat(301)],
    }),
    'bad-flow': (flow) => flow('FW' + 'X'.repeat(32)).fetch(),
};

function usage(msg) {
    process.stderr.write(`${msg}\nusage: node testusers-client.js `
        + `[GATEWAY_URL] {${Object.keys(SCENARIOS).join('|')}}\n`);
    process.exit(2);
}

async function main() {
    const args = process.argv.slice(2);
    const scenario = args.pop();
    const gateway = args[0] || process.env.STUDIO_GATEWAY_URL;

    if (!scenario || !SCENARIOS[scenario]) {
        usage(`unknown scenario: ${scenario}`);
    }
    if (!gateway || !/^https?:\/\/[^/]+\/?$/.test(gateway)) {
        usage('GATEWAY_URL (argument or STUDIO_GATEWAY_URL) must be '
              + 'http[s]://host:port');
    }

    const client = twilio(DUMMY_SID, DUMMY_TOKEN);

    // Pointing the library at the gateway.  Every product in twilio-node is
    // a Domain (lib/base/Domain.js) constructed with its base URL, here
    // StudioBase: super(twilio, "https://studio.twilio.com"), and every
    // request URL is built from the public, typed `baseUrl` property
    // (Domain.d.ts: `baseUrl: string`) in Domain.absoluteUrl(): baseUrl +
    // "/" + version ("v2") + resource path.  Replacing that one property on
    // the Studio domain is the least invasive way to redirect it: the
    // library's own code still builds the path, the form body, the headers
    // and the Basic credentials, and its own RequestClient (axios) sends
    // them, so the test sees exactly what a user's process would send.
    //
    // Alternatives considered:
    //  - region/edge (the documented knob): it only rewrites the host as
    //    studio.{edge}.{region}.twilio.com; it cannot name another host.
    //  - a custom `httpClient` option (documented in the README): it gets
    //    the finished request, so redirecting means wrapping RequestClient
    //    and rewriting every opts.uri; more code, and it would replace the
    //    transport whose behaviour we want to observe.
    //  - HTTP_PROXY: only feeds the https agent, and would rewrite nothing.
    //
    // One catch: BaseTwilio.request() still runs getHostname() on the URL
    // built from baseUrl, applying region/edge (from options or the
    // TWILIO_REGION / TWILIO_EDGE environment).  With neither set it leaves
    // 127.0.0.1 or localhost alone (by accident for 127.0.0.1: "127.0" is
    // parsed as product "127" and region "0" and put back together as it
    // was), but with a region it would turn 127.0.0.1 into 127.au1.0.1, so
    // both are cleared here.
    client.region = undefined;
    client.edge = undefined;
    client.studio.baseUrl = gateway.replace(/\/$/, '');

    const flow = (sid) => client.studio.v2.flows(sid).testUsers();

    try {
        const result = await SCENARIOS[scenario](flow);
        process.stdout.write(JSON.stringify(result.toJSON()) + '\n');
    } catch (err) {
        if (err instanceof twilio.RestException) {
            process.stdout.write(JSON.stringify({
                status: err.status,
                code: err.code,
                message: err.message,
                moreInfo: err.moreInfo,
            }) + '\n');
            return;
        }
        throw err;
    }
}

main().catch((err) => {
    process.stderr.write(`testusers-client: ${err && err.stack || err}\n`);
    process.exit(1);
});
