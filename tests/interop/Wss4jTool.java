// Apache WSS4J 1.6 (Debian's libwss4j-java) as an independent WS-Security peer for the interop tests.
//
// One JVM per batch: tests/integration/test_interop_wss4j.py compiles this file with javac (no build
// tool) into a temporary directory and runs it once per batch of jobs. Usage:
//
//   java -cp CLASSPATH Wss4jTool JOBS_FILE
//
// JOBS_FILE has one job per line, fields separated by tabs:
//
//   sign    KEY_PEM  CERT_PEM  PREFIX_LISTS(on|off)  IN_FILE  OUT_FILE
//   verify  CA_PEM   IN_FILE
//
// "sign" completes an unsigned SOAP 1.1 envelope the way a CXF/WSS4J client does: a Timestamp
// (300 s), a BinarySecurityToken and a signature (rsa-sha256, sha256, exc-c14n) over Body,
// Timestamp, To, Action, MessageID (and RelatesTo when present). PREFIX_LISTS "on" is WSS4J's default
// (WSSConfig wsiBSPCompliant: ec:InclusiveNamespaces PrefixList in SignedInfo and every Reference);
// "off" switches the prefix lists off.
//
// "verify" processes the Security header with WSSecurityEngine, trusting only CA_PEM's certificates, and reports
// which parts the signature covered where they sit (Body as the Envelope's Body, WS-Addressing headers
// as children of Header, Timestamp and a WS-Security 1.1 SignatureConfirmation in the Security header).
//
// Output: one JSON object per job, in order, on standard output:
//   {"job":N,"ok":true|false,"error":"...","signed":["Body",...],"relatesTo":"...","messageId":"...",
//    "prefixLists":K,"subject":"..."}

import java.io.ByteArrayInputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.transform.OutputKeys;
import javax.xml.transform.Transformer;
import javax.xml.transform.TransformerFactory;
import javax.xml.transform.dom.DOMSource;
import javax.xml.transform.stream.StreamResult;

import org.apache.ws.security.WSConstants;
import org.apache.ws.security.WSDataRef;
import org.apache.ws.security.WSEncryptionPart;
import org.apache.ws.security.WSSConfig;
import org.apache.ws.security.WSSecurityEngine;
import org.apache.ws.security.WSSecurityEngineResult;
import org.apache.ws.security.components.crypto.Merlin;
import org.apache.ws.security.message.WSSecHeader;
import org.apache.ws.security.message.WSSecSignature;
import org.apache.ws.security.message.WSSecTimestamp;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.Node;

public final class Wss4jTool {
    static final String SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/";
    static final String WSA_NS = "http://www.w3.org/2005/08/addressing";
    static final String EC_NS = "http://www.w3.org/2001/10/xml-exc-c14n#";
    static final String WSSE11_NS = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd";
    static final String RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
    static final String ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
    static final String PASSWORD = "interop";

    public static void main(String[] args) throws Exception {
        WSSConfig.init();
        List<String> jobs = Files.readAllLines(Paths.get(args[0]), StandardCharsets.UTF_8);
        StringBuilder out = new StringBuilder();
        int n = 0;
        for (String line : jobs) {
            if (line.isBlank()) {
                continue;
            }
            String[] f = line.split("\t");
            StringBuilder result = new StringBuilder();
            try {
                if (f[0].equals("sign")) {
                    sign(f[1], f[2], f[3].equals("on"), f[4], f[5]);
                    result.append("\"ok\":true");
                } else if (f[0].equals("verify")) {
                    result.append(verify(f[1], f[2]));
                } else {
                    throw new IllegalArgumentException("unknown job " + f[0]);
                }
            } catch (Exception e) {
                result.setLength(0);
                result.append("\"ok\":false,\"error\":").append(json(e.getClass().getSimpleName() + ": " + e.getMessage()));
            }
            out.append("{\"job\":").append(n++).append(',').append(result).append("}\n");
        }
        System.out.print(out);
        System.out.flush();
    }

    // ------------------------------------------------------------------------------ signing

    static void sign(String keyPem, String certPem, boolean prefixLists, String in, String out) throws Exception {
        X509Certificate cert = certificate(certPem);
        PrivateKey key = privateKey(keyPem, cert.getPublicKey().getAlgorithm());
        KeyStore ks = KeyStore.getInstance("PKCS12");
        ks.load(null, null);
        ks.setKeyEntry("signer", key, PASSWORD.toCharArray(), new Certificate[] {cert});
        Merlin crypto = new Merlin();
        crypto.setKeyStore(ks);

        Document doc = parse(in);
        WSSConfig config = WSSConfig.getNewInstance();
        config.setWsiBSPCompliant(prefixLists);  // WSS4J 1.6: the switch for ec:InclusiveNamespaces
        WSSecHeader header = new WSSecHeader();
        header.setMustUnderstand(true);
        header.insertSecurityHeader(doc);  // takes the envelope's (empty) wsse:Security when present
        WSSecTimestamp timestamp = new WSSecTimestamp(config);
        timestamp.setTimeToLive(300);
        timestamp.build(doc, header);

        WSSecSignature signature = new WSSecSignature(config);
        signature.setUserInfo("signer", PASSWORD);
        signature.setKeyIdentifierType(WSConstants.BST_DIRECT_REFERENCE);
        signature.setSignatureAlgorithm(key.getAlgorithm().equals("EC") ? ECDSA_SHA256 : RSA_SHA256);
        signature.setDigestAlgo(WSConstants.SHA256);
        List<WSEncryptionPart> parts = new ArrayList<>();
        parts.add(new WSEncryptionPart("Body", SOAP_NS, "Element"));
        parts.add(new WSEncryptionPart("Timestamp", WSConstants.WSU_NS, "Element"));
        for (String name : new String[] {"To", "Action", "MessageID", "RelatesTo"}) {
            if (doc.getElementsByTagNameNS(WSA_NS, name).getLength() > 0) {
                parts.add(new WSEncryptionPart(name, WSA_NS, "Element"));
            }
        }
        signature.setParts(parts);
        signature.build(doc, crypto, header);
        write(doc, out);
    }

    // ------------------------------------------------------------------------------ verifying

    static String verify(String caPem, String in) throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        // CA_PEM may hold a chain (the sandbox's intermediate followed by its root): trust each.
        int n = 0;
        for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(
                new ByteArrayInputStream(Files.readAllBytes(Paths.get(caPem))))) {
            trust.setCertificateEntry("ca" + n++, c);
        }
        Merlin crypto = new Merlin();
        crypto.setKeyStore(trust);
        crypto.setTrustStore(trust);

        Document doc = parse(in);
        int prefixLists = doc.getElementsByTagNameNS(EC_NS, "InclusiveNamespaces").getLength();
        WSSecurityEngine engine = new WSSecurityEngine();
        List<WSSecurityEngineResult> results = engine.processSecurityHeader(doc, null, null, crypto);
        if (results == null || results.isEmpty()) {
            throw new IllegalStateException("no Security header processed");
        }
        Element envelope = doc.getDocumentElement();
        Element header = child(envelope, SOAP_NS, "Header");
        Element body = child(envelope, SOAP_NS, "Body");
        List<String> signed = new ArrayList<>();
        String subject = null;
        int signatures = 0;
        for (WSSecurityEngineResult result : results) {
            if (((Integer) result.get(WSSecurityEngineResult.TAG_ACTION)) != WSConstants.SIGN) {
                continue;
            }
            signatures++;
            X509Certificate cert = (X509Certificate) result.get(WSSecurityEngineResult.TAG_X509_CERTIFICATE);
            subject = cert == null ? null : cert.getSubjectX500Principal().getName();
            @SuppressWarnings("unchecked")
            List<WSDataRef> refs = (List<WSDataRef>) result.get(WSSecurityEngineResult.TAG_DATA_REF_URIS);
            for (WSDataRef ref : refs) {
                Element el = ref.getProtectedElement();
                String name = el.getLocalName();
                Node parent = el.getParentNode();
                boolean placed;
                if (SOAP_NS.equals(el.getNamespaceURI()) && name.equals("Body")) {
                    placed = el == body;
                } else if (WSA_NS.equals(el.getNamespaceURI())) {
                    placed = parent == header;
                } else if ((WSConstants.WSU_NS.equals(el.getNamespaceURI()) && name.equals("Timestamp"))
                        || (WSSE11_NS.equals(el.getNamespaceURI()) && name.equals("SignatureConfirmation"))) {
                    placed = parent != null && parent.getParentNode() == header
                            && WSConstants.WSSE_NS.equals(parent.getNamespaceURI());
                } else {
                    placed = false;
                }
                signed.add(placed ? name : "misplaced:" + name);
            }
        }
        if (signatures != 1) {
            throw new IllegalStateException("expected one signature, found " + signatures);
        }
        StringBuilder s = new StringBuilder("\"ok\":true,\"signed\":[");
        for (int i = 0; i < signed.size(); i++) {
            s.append(i == 0 ? "" : ",").append(json(signed.get(i)));
        }
        s.append("],\"relatesTo\":").append(json(text(header, WSA_NS, "RelatesTo")));
        s.append(",\"messageId\":").append(json(text(header, WSA_NS, "MessageID")));
        s.append(",\"prefixLists\":").append(prefixLists);
        s.append(",\"subject\":").append(json(subject));
        return s.toString();
    }

    // ------------------------------------------------------------------------------ helpers

    static Document parse(String file) throws Exception {
        DocumentBuilderFactory dbf = DocumentBuilderFactory.newInstance();
        dbf.setNamespaceAware(true);
        dbf.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        return dbf.newDocumentBuilder().parse(new File(file));
    }

    static void write(Document doc, String file) throws Exception {
        Transformer t = TransformerFactory.newInstance().newTransformer();
        t.setOutputProperty(OutputKeys.ENCODING, "UTF-8");
        try (OutputStream os = new FileOutputStream(file)) {
            t.transform(new DOMSource(doc), new StreamResult(os));
        }
    }

    static X509Certificate certificate(String pem) throws Exception {
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        return (X509Certificate) cf.generateCertificate(new ByteArrayInputStream(Files.readAllBytes(Paths.get(pem))));
    }

    static PrivateKey privateKey(String pem, String algorithm) throws Exception {
        String text = new String(Files.readAllBytes(Paths.get(pem)), StandardCharsets.US_ASCII);
        String b64 = text.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
        return KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(Base64.getDecoder().decode(b64)));
    }

    static Element child(Element parent, String ns, String name) {
        if (parent == null) {
            return null;
        }
        for (Node n = parent.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element && ns.equals(n.getNamespaceURI()) && name.equals(n.getLocalName())) {
                return (Element) n;
            }
        }
        return null;
    }

    static String text(Element parent, String ns, String name) {
        Element el = child(parent, ns, name);
        return el == null ? null : el.getTextContent().trim();
    }

    static String json(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
